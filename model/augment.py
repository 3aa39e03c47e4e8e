"""Training-time augmentation: speed, time shift, gain, background noise, SpecAugment masks."""

from __future__ import annotations

import torch


def time_shift(waves: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each clip by up to ±max_shift samples, zero filled."""
    out = torch.zeros_like(waves)
    n = waves.shape[1]
    shifts = torch.randint(-max_shift, max_shift + 1, (waves.shape[0],), generator=gen)
    for i, s in enumerate(shifts.tolist()):
        if s >= 0:
            out[i, s:] = waves[i, : n - s]
        else:
            out[i, :s] = waves[i, -s:]
    return out


def speed_perturb(waves: torch.Tensor, max_dev: float, gen: torch.Generator) -> torch.Tensor:
    """Play each clip at a random speed in [1 − max_dev, 1 + max_dev] about its centre.

    Why: a new speaker differs from the training speakers mostly in vocal-tract length and
    speaking rate; resampling moves both formants (pitch and spectral envelope scale by the
    factor) and duration, the classic speed perturbation of speech recognition. Output sample
    j reads the input at (j − n/2)·f + n/2 by linear interpolation; outside the clip it is 0.
    """
    if max_dev <= 0:
        return waves
    b, n = waves.shape
    f = torch.empty(b, 1).uniform_(1 - max_dev, 1 + max_dev, generator=gen)
    pos = (torch.arange(n, dtype=torch.float32) - n / 2) * f + n / 2
    i0 = pos.floor().long()
    w = pos - i0
    valid = (i0 >= 0) & (i0 < n - 1)
    i0 = i0.clamp(0, n - 2)
    out = waves.gather(1, i0) * (1 - w) + waves.gather(1, i0 + 1) * w
    return out * valid


def noise_windows(
    recordings: list[torch.Tensor], count: int, n: int, gen: torch.Generator
) -> torch.Tensor:
    """``count`` random n-sample windows from the noise recordings."""
    out = torch.zeros(count, n)
    if not recordings:
        return out
    for i in range(count):
        r = recordings[int(torch.randint(len(recordings), (1,), generator=gen))]
        if r.numel() <= n:
            out[i, : r.numel()] = r
        else:
            start = int(torch.randint(r.numel() - n, (1,), generator=gen))
            out[i] = r[start : start + n]
    return out


def mix_noise(
    waves: torch.Tensor,
    noise: torch.Tensor,
    snr_db: tuple[float, float],
    prob: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """Add noise at a random SNR (uniform in dB) to a random subset of the clips."""
    b = waves.shape[0]
    p_sig = waves.pow(2).mean(1, keepdim=True).clamp_min(1e-8)
    p_noise = noise.pow(2).mean(1, keepdim=True).clamp_min(1e-8)
    snr = torch.empty(b, 1).uniform_(*snr_db, generator=gen)
    scale = torch.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
    use = (torch.rand(b, 1, generator=gen) < prob).float()
    return waves + use * scale * noise


def spec_mask(
    x: torch.Tensor, n_mels: int, max_t: int, max_f: int, gen: torch.Generator
) -> torch.Tensor:
    """One time mask and one mel-band mask (applied to all Δ blocks) per clip, on (B, T, F)."""
    x = x.clone()
    b, t_len, f = x.shape
    blocks = f // n_mels
    for i in range(b):
        tw = int(torch.randint(0, max_t + 1, (1,), generator=gen))
        t0 = int(torch.randint(0, max(1, t_len - tw), (1,), generator=gen))
        x[i, t0 : t0 + tw] = 0.0
        fw = int(torch.randint(0, max_f + 1, (1,), generator=gen))
        f0 = int(torch.randint(0, max(1, n_mels - fw), (1,), generator=gen))
        for k in range(blocks):
            x[i, :, k * n_mels + f0 : k * n_mels + f0 + fw] = 0.0
    return x
