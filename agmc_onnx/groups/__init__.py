"""Channel groups: the channel-flow walk, per-operator rules, groups and their MACs model."""
