"""Email providers: SendGrid (API), SMTP, and a local Maildir outbox for development.

Each implements :class:`activities.messages.EmailProvider` and classifies its failures with
:mod:`activities.errors`. Import the provider modules directly; this package imports nothing,
so loading one provider never drags in another's dependencies.
"""
