"""The hosts API (admin only): Metal³ BareMetalHost semantics over REST."""
