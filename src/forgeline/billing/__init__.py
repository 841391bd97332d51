"""Monetize: API keys, plans, rate limits, quotas, the usage ledger and invoices."""
