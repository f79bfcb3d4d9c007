package oci

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupLimitsUsable reports whether runc can apply memory and CPU limits on
// this host: with cgroup v2 the root must offer the memory and cpu
// controllers, with cgroup v1 (or hybrid) their hierarchies must be mounted
// and writable. The error says what is missing.
func CgroupLimitsUsable() error {
	return cgroupLimitsUsable("/sys/fs/cgroup")
}

func cgroupLimitsUsable(root string) error {
	if b, err := os.ReadFile(root + "/cgroup.controllers"); err == nil {
		have := strings.Fields(string(b))
		for _, c := range []string{"memory", "cpu"} {
			if !slices.Contains(have, c) {
				return fmt.Errorf("the cgroup v2 root does not offer the %s controller", c)
			}
		}
		if err := unix.Access(root, unix.W_OK); err != nil {
			return fmt.Errorf("cgroup v2 root %s is not writable: %v", root, err)
		}
		return nil
	}
	for _, c := range []string{"memory", "cpu"} {
		dir := root + "/" + c
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("no cgroup v1 %s hierarchy at %s", c, dir)
		}
		if err := unix.Access(dir, unix.W_OK); err != nil {
			return fmt.Errorf("cgroup v1 %s hierarchy %s is not writable: %v", c, dir, err)
		}
	}
	return nil
}
