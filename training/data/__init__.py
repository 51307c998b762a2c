"""Training data: CelebAMask-HQ, drawing styles, and the offline synthetic heads."""
