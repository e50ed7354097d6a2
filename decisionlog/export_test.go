package decisionlog

// KeyHash is keyHash, for the tests outside the package.
var KeyHash = keyHash
