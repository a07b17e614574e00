"""Moving sites back outside their windows: the pins a promotion carries and the late sites it watches."""
