"""What the transformer-encoder tasks share: the runtimes that compute logits (PyTorch, ONNX
Runtime) and the pieces of Hugging Face ``Trainer`` set-up every fine-tuning run uses."""
