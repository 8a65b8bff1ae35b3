"""Solutions to the exercises of notebook 04, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def my_clip(grads, max_norm):
    total = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
    if total > max_norm:
        for g in grads:
            g *= max_norm / (total + 1e-6)
    return total


# EXERCISE 2
def my_cosine_lr(step, num_steps, base_lr, warmup_steps):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, num_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + np.cos(np.pi * progress))
