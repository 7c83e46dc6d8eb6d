"""Web push: VAPID keys, the subscriptions table and a sender with retries and circuit breakers."""
