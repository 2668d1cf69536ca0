"""Training of silse hashing models: corpus builder, losses, configurations, trainer."""
