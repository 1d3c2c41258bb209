"""Training, evaluating and running distortion-removal models on datagen corpora."""
