//go:build !race

package tiletoken

const raceEnabled = false
