"""Bolt listeners: each acks at once (inline, pure) and does its slow work in a lazy function."""
