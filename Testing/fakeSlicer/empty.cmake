# intentionally empty
