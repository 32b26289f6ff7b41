package guest

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestNewestKernelName(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-10-amd64", "linux-image-6.1.0-10-amd64-dbg"}, "linux-image-6.1.0-10-amd64"},
		{[]string{"linux-image-6.1.0-56-amd64-unsigned", "linux-image-6.1.0-56-amd64", "linux-image-6.1.0-56-cloud-amd64"}, "linux-image-6.1.0-56-amd64"},
		{[]string{"linux-image-6.1.0-57-amd64-unsigned", "linux-image-6.1.0-56-amd64"}, "linux-image-6.1.0-57-amd64-unsigned"},
		{[]string{"linux-image-6.1.0-56-rt-amd64", "linux-image-6.12.0-1-amd64"}, ""},
	} {
		if got := newestKernelName(tc.names); got != tc.want {
			t.Errorf("newestKernelName(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestHasNote(t *testing.T) {
	note := func(owner string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		name := append([]byte(owner), 0)
		binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(name)), uint32(len(desc)), typ})
		b.Write(name)
		b.Write(make([]byte, (4-len(name)%4)%4))
		b.Write(desc)
		b.Write(make([]byte, (4-len(desc)%4)%4))
		return b.Bytes()
	}
	gnu := note("GNU", 3, []byte("build-id-bytes!"))
	pvh := note("Xen", 18, []byte{0, 0, 0, 1})
	for _, tc := range []struct {
		name string
		seg  []byte
		want bool
	}{
		{"after another note", append(append([]byte{}, gnu...), pvh...), true},
		{"absent", gnu, false},
		{"wrong owner", note("Xem", 18, []byte{1, 2, 3, 4}), false},
		{"truncated", pvh[:len(pvh)-2], false},
	} {
		if got := hasNote(tc.seg, "Xen", 18); got != tc.want {
			t.Errorf("%s: hasNote = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecompressBzImageRejects(t *testing.T) {
	bz := make([]byte, 0x300)
	if _, err := decompressBzImage(t.Context(), bz); err == nil || !strings.Contains(err.Error(), "not a bzImage") {
		t.Errorf("zeros: got %v", err)
	}
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(bz[0x24c:], 1<<20)
	if _, err := decompressBzImage(t.Context(), bz); err == nil || !strings.Contains(err.Error(), "outside the file") {
		t.Errorf("payload past the end: got %v", err)
	}
}
