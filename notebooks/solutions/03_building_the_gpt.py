"""Solutions to the exercises of notebook 03, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def causal_attention(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(*range(k.ndim - 2), -1, -2) / np.sqrt(d)  # (..., T, T): query t against key j
    future = np.triu(np.ones((t, t), dtype=bool), k=1)                 # True where key j > query t
    weights = F.softmax(scores.masked_fill(future, -np.inf), axis=-1)  # each row sums to 1 over the keys
    return weights @ v, weights                                         # (..., T, D), (..., T, T)


# EXERCISE 2
def block(x, attn, mlp):
    x = x + attn(rms_norm(x))    # attention reads a normalised copy; its result joins the stream
    return x + mlp(rms_norm(x))  # the MLP reads the stream as attention left it


# EXERCISE 3
def average_by_softmax(t):
    future = np.triu(np.ones((t, t), dtype=bool), k=1)
    return F.softmax(Tensor(np.zeros((t, t))).masked_fill(future, -np.inf), axis=-1).data


# EXERCISE 4
def count_parameters(V, T, C, L):
    # wte (V x C), wpe (T x C), lm_head (V x C); per layer wq, wk, wv, wo (C x C) and fc1, fc2 (C x 4C)
    return V * C + T * C + V * C + L * (4 * C * C + 2 * 4 * C * C)


# EXERCISE 5
def greedy(model, ids, n):
    ids, new = list(ids), []
    with no_grad():
        for _ in range(n):
            logits = model(np.asarray([ids[-T:]])).data[0, -1]
            new.append(int(np.argmax(logits)))
            ids.append(new[-1])
    return new
