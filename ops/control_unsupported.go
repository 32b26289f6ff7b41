//go:build !linux

package ops

import (
	"context"
	"errors"
)

// Server is a supervisor's control socket.
type Server struct{}

func Serve(dir string, handle func(Request) error) (*Server, error) {
	return nil, errors.ErrUnsupported
}
func (s *Server) Close()                                     {}
func Send(ctx context.Context, s *Status, req Request) error { return errors.ErrUnsupported }

// ExecSession is the supervisor's side of one exec's connection.
type ExecSession struct{}
