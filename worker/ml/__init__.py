"""ML pipeline of autodl: backbones, weights, featurization, heads, evaluation, export.

Each step is its own module; they know nothing about HTTP or the database.
"""
