"""Feeds: poll candle and sensor sources within their budgets and hand on what closed."""
