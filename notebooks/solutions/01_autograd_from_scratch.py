"""Solutions to the exercises of notebook 01, one chunk per `# EXERCISE n` line.

Paste a chunk into the notebook's exercise cell of the same number; the test suite does exactly that and
checks that every `# CHECK n` cell then passes. The chunks use names the notebook defined (Value, np, math, loss_of).
"""

# EXERCISE 1
def topological_order(root):
    order, placed = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_pushed = stack.pop()
        if parents_pushed:
            order.append(node)  # every parent was placed while this entry waited underneath them
        elif id(node) not in placed:
            placed.add(id(node))
            stack.append((node, True))  # come back to it once its parents are placed
            stack.extend((p, False) for p in node.parents if id(p) not in placed)
    return order


# EXERCISE 2
def train_step(net, lr):
    loss = loss_of(net)
    for p in net.parameters():
        p.grad = 0.0  # backward adds to .grad: start from zero
    loss.backward()
    for p in net.parameters():
        p.data -= lr * p.grad  # against the gradient
    return loss.data


# EXERCISE 3
def value_exp(v):
    out = Value(math.exp(v.data), (v,), "exp")

    def _backward():  # d e^x / dx = e^x, which is out.data
        v.grad += out.data * out.grad

    out._backward = _backward
    return out


# EXERCISE 4
def value_div(a, b):
    # a / b = a * b^-1: the backward rules of * and ** already give d/da = 1/b and d/db = -a/b^2,
    # because the chain rule composes them.
    return a * b**-1


# EXERCISE 5
def my_unbroadcast(grad, shape):
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))  # the leading axes broadcasting added
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=ones, keepdims=True) if ones else grad
