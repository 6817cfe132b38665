"""Text processing with no workflow in it: ticket parsing, PII redaction, screening, language.

Everything here is pure (strings in, strings or findings out), so the workflow, the model code
and retrieval can all use it without importing each other.
"""
