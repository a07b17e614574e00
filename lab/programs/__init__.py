"""The lab's real upstream programs, built from the Go tools module here (issue 17)."""
