"""Deployment checks (issue 9): Dockerfile, compose, Helm chart, nginx, deploy script."""
