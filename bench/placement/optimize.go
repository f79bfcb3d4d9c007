package main

import "github.com/aloft-dev/aloft/internal/placement"

// optimize is the bench's only call into the optimizer under test.
func optimize(p placement.Problem) placement.Plan { return placement.Optimize(p) }
