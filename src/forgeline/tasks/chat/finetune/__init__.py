"""LoRA fine-tuning of GGUF chat models, their export back to GGUF, and the export's parity gate."""
