"""Solutions to the exercises of notebook 05, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def my_top_p(p, top_p):
    order = np.argsort(-p)
    keep = int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1  # include the token that crosses top_p
    out = np.zeros_like(p)
    out[order[:keep]] = p[order[:keep]]
    return out / out.sum()


# EXERCISE 2
def offset_mask(start, t_new):
    # row i is position start + i: it sees keys 0..start + i, the diagonal shifted right by start
    return np.tril(np.ones((t_new, start + t_new), dtype=bool), k=start)
