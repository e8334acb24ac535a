package nat

// CheckInvariants exposes the table's self-check to the external tests.
func (e *Engine) CheckInvariants() error { return e.checkInvariants() }
