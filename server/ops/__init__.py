"""Operations: health and readiness checks, lifecycle (drain), maintenance."""
