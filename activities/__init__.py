"""Side effects: rendering, email, webhooks, chat, lookups and store access (delivery issue)."""
