"""Knowledge-base question answering: a question matched to the entries of a knowledge base,
answered from the best one or handed to the fallback when none matches well enough."""

from forgeline.tasks.knowledge_qa.model import KnowledgeQA

__all__ = ["KnowledgeQA"]
