"""Evidence reports for auditors: facts gathers the data, render formats it (HTML, PDF, Markdown, JSON)."""
