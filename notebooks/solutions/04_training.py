"""Solutions to the exercises of notebook 04, one chunk per `# EXERCISE n` line (see notebook 01's file)."""

# EXERCISE 1
def adam_update(w, g, m, v, t, lr, betas, eps):
    b1, b2 = betas
    m[...] = b1 * m + (1 - b1) * g          # running average of the gradient
    v[...] = b2 * v + (1 - b2) * g**2       # running average of its square
    m_hat = m / (1 - b1**t)                 # bias correction: the averages' weights sum to 1 - b^t
    v_hat = v / (1 - b2**t)
    w -= lr * m_hat / (np.sqrt(v_hat) + eps)


# EXERCISE 2
def train_step(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)                   # forward
    loss.backward()                                       # backward
    norm = clip_grad_norm(model.parameters(), max_norm)   # clip
    optimizer.step()                                      # Adam
    return loss.item(), norm


# EXERCISE 3
def my_clip(grads, max_norm):
    total = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
    if total > max_norm:
        for g in grads:
            g *= max_norm / (total + 1e-6)
    return total


# EXERCISE 4
def my_cosine_lr(step, num_steps, base_lr, warmup_steps):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, num_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + np.cos(np.pi * progress))
