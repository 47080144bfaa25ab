"""What every kind shares: the API client and login, permissions, names and labels, ownership,
conditions, durations, artifact locations, the configuration every kind needs, and pod pieces."""
