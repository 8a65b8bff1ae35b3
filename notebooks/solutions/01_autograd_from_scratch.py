"""Solutions to the exercises of notebook 01, one chunk per `# EXERCISE n` line.

Paste a chunk into the notebook's exercise cell of the same number; the test suite does exactly that and
checks that every `# CHECK n` cell then passes. The chunks use names the notebook defined (Value, np, math).
"""

# EXERCISE 1
def value_exp(v):
    out = Value(math.exp(v.data), (v,), "exp")

    def _backward():  # d e^x / dx = e^x, which is out.data
        v.grad += out.data * out.grad

    out._backward = _backward
    return out


# EXERCISE 2
def value_div(a, b):
    # a / b = a * b^-1: the backward rules of * and ** already give d/da = 1/b and d/db = -a/b^2,
    # because the chain rule composes them.
    return a * b**-1


# EXERCISE 3
def my_unbroadcast(grad, shape):
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))  # the leading axes broadcasting added
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=ones, keepdims=True) if ones else grad
