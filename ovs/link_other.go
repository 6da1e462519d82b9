//go:build !linux

package ovs

import "errors"

func setLinkUp(netns, name string) (bool, error) {
	return false, errors.New("ovs: bringing interfaces up is only supported on Linux")
}
