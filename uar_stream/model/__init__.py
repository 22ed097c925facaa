"""The model: ensemble architectures, weights on disk, preprocessing, uncertainty."""
