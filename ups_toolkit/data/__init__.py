"""Data layer: the sample schema, converters from external formats, prepared datasets, collate, synthetic data."""
