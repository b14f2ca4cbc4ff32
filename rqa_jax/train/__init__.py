"""Training: state and optimizer, jitted steps, and the loop."""
