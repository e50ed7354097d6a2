package identity

// SweepTokenCache runs the sweep Run makes every minute, now.
func (v *Verifier) SweepTokenCache() {
	if v.cache != nil {
		v.cache.sweep(v.now())
	}
}
