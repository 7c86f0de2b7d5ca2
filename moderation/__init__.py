"""Moderation: who may do what to whom (:mod:`moderation.permissions`), and every
moderator control of the contract (:mod:`moderation.actions`)."""
