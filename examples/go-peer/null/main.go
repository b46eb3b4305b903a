// The Go peer of examples/null_plugin.rs: `GET <mount>/value` answers {"value": "benchmark"} from
// a constant, touching neither storage nor anything else.
package main

import (
	"qlikbench/pb"
	"qlikbench/peer"
)

type null struct{}

func (null) Handle(op, path string, _ map[string]interface{}) (map[string]interface{}, *pb.ProtoError) {
	if path != "value" {
		return nil, &pb.ProtoError{ErrType: peer.ErrUnsupportedPath, ErrMsg: "unsupported path"}
	}
	if op != "read" {
		return nil, &pb.ProtoError{ErrType: peer.ErrUnsupportedOperation, ErrMsg: "unsupported operation"}
	}
	return map[string]interface{}{"value": "benchmark"}, nil
}

func (null) Exists(string) (bool, bool) { return false, false }

func main() {
	peer.Serve(&peer.Backend{New: func() peer.Mount { return null{} }, Version: "v0.0.0"})
}
