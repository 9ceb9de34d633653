"""``compress``: the whole pipeline from a model to a smaller, faster, verified model with a report."""
