"""Solutions to the exercises of notebook 02, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def rms_norm_backward(g, w, saved):
    r, y = saved
    gy = g * w                                                    # ĝ, the gradient arriving at y
    dx = r * (gy - y * np.mean(gy * y, axis=-1, keepdims=True))  # r (ĝ - y mean(ĝ y)), row by row
    dw = (g * y).reshape(-1, y.shape[-1]).sum(axis=0)            # every row uses the same w: sum over the rows
    return dx, dw


# EXERCISE 2
def attention_backward(G, Q, K, V, P, O):
    D = Q.shape[1]
    dV = P.T @ G                             # step 1
    dP = G @ V.T
    r = (G * O).sum(axis=-1, keepdims=True)  # = rowsum(dP * P), the identity: one number per row
    dS = P * (dP - r)                        # step 2
    dQ = dS @ K / np.sqrt(D)                 # step 3
    dK = dS.T @ Q / np.sqrt(D)
    return dQ, dK, dV


# EXERCISE 3
def log_softmax_backward(x, g):
    # y_i = x_i - logsumexp(x): dy_i/dx_j = [i = j] - p_j, so dL/dx_j = g_j - p_j * sum_i g_i
    p = softmax_forward(x)
    return g - p * g.sum(axis=-1, keepdims=True)


# EXERCISE 4
def attention_backward_saved(G, Q, K, V, E, s, O):
    D = Q.shape[1]
    r = (G * O).sum(axis=-1, keepdims=True)  # rowsum(dP * P), from the output
    Gs = G / s                               # 1/s applied to the T x D operand
    dV = E.T @ Gs                            # P^T G with P = E / s
    dS_times_s = E * (G @ V.T - r)           # s * dS, row by row
    dQ = dS_times_s @ K / (s * np.sqrt(D))
    dK = dS_times_s.T @ (Q / (s * np.sqrt(D)))
    return dQ, dK, dV


# EXERCISE 5
def cross_entropy_backward_ignore(x, t, ignore_index):
    valid = t != ignore_index
    grad = softmax_forward(x)
    rows = np.flatnonzero(valid)
    grad[rows, t[rows]] -= 1.0
    grad[~valid] = 0.0  # ignored positions add nothing
    return grad / valid.sum()
