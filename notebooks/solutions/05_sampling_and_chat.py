"""Solutions to the exercises of notebook 05, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def attend_with_cache(keys, values, length, q, k, v):
    t_new, d = q.shape[1], q.shape[2]
    end = length + t_new
    keys[:, length:end], values[:, length:end] = k, v        # append: the next call finds them
    scores = q @ keys[:, :end].transpose(0, 2, 1) / np.sqrt(d)  # (H, t_new, end): only the filled part
    allowed = np.arange(end)[None, :] <= length + np.arange(t_new)[:, None]  # query i is position length + i
    scores = np.where(allowed, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ values[:, :end]


# EXERCISE 2
def greedy_with_cache(model, prompt_ids, n_new):
    new = []
    with no_grad():
        cache = model.new_cache(1)
        logits = model(np.asarray([prompt_ids]), cache).data[0, -1]  # the prompt, once
        for _ in range(n_new):
            new.append(int(np.argmax(logits)))
            if len(new) < n_new:  # the last token's logits would go unused
                logits = model(np.asarray([[new[-1]]]), cache).data[0, -1]  # only the new token
    return new


# EXERCISE 3
def my_top_p(p, top_p):
    order = np.argsort(-p)
    keep = int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1  # include the token that crosses top_p
    out = np.zeros_like(p)
    out[order[:keep]] = p[order[:keep]]
    return out / out.sum()


# EXERCISE 4
def offset_mask(start, t_new):
    # row i is position start + i: it sees keys 0..start + i, the diagonal shifted right by start
    return np.tril(np.ones((t_new, start + t_new), dtype=bool), k=start)
