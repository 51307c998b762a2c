"""The SAGE networks: mapping, feature field, renderer, decoders, translator, discriminators."""
