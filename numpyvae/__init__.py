"""numpyvae: a Variational Autoencoder by hand in NumPy."""
