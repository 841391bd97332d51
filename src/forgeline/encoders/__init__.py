"""What the transformer-encoder tasks share: the runtimes that compute logits (PyTorch, ONNX
Runtime) and a pretrained encoder with a new output layer."""
