package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/aloft-dev/aloft/api/v1"
	"github.com/spf13/cobra"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the server's local image store (shared by all workspaces)"}
	imp := &cobra.Command{
		Use:   "import FILE|DIR",
		Short: "Import a `docker save` tar, an OCI image layout tar, or an OCI image layout directory (developer)",
		Long: `Import images into the server's local image store. FILE is a 'docker save'
archive or an OCI image layout tar; DIR is an OCI image layout directory (it is
sent as a tar). Every image in it is checked (platform, digests of manifest,
config and every layer) and imported, or none is. An imported name:tag replaces
an image of the same name. Pulling from a registry is not supported yet.`,
		Example: `  make example-image && aloft image import bin/hello-world.tar
  docker save redis:7 -o redis.tar && aloft image import redis.tar
  aloft image import ./oci-layout-dir`,
		Args: exactArgs(1, "an archive file or an OCI layout directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			src := args[0]
			fi, err := os.Stat(src)
			if err != nil {
				return &exitErr{exitError, err}
			}
			var (
				body     io.Reader
				filename = filepath.Base(filepath.Clean(src))
			)
			if fi.IsDir() {
				if _, err := os.Stat(filepath.Join(src, "index.json")); err != nil {
					return &exitErr{exitError, fmt.Errorf("%s is not an OCI image layout directory (no index.json)", src)}
				}
				pr := tarDir(src)
				defer pr.Close()
				body = pr
				filename += ".tar"
			} else {
				f, err := os.Open(src)
				if err != nil {
					return &exitErr{exitError, err}
				}
				defer f.Close()
				body = f
			}
			imgs, err := g.client().ImportImageFile(cmd.Context(), filename, body)
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, imgs, func(w io.Writer) error {
				for _, i := range imgs {
					fmt.Fprintf(w, "image/%s imported (%s, %s, %s)\n", imageName(i), shortDigest(i.Digest), humanSize(i.Size), i.Platform)
				}
				return nil
			})
		},
	}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List images in the server's local image store", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			imgs, err := g.client().ListImages(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, imgs, func(w io.Writer) error { return printImages(w, imgs) })
		},
	}
	var force bool
	rm := &cobra.Command{
		Use:     "rm REF [--force]",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove an image by name[:tag], sha256 digest (every tag of it) or name@digest (admin)",
		Long: `Remove an image from the server's local image store. The server refuses while a
deployment that is not being deleted uses the image; --force removes it anyway.`,
		Example:           "  aloft image rm hello-world:latest\n  aloft image rm sha256:0123...",
		Args:              exactArgs(1, "an image name or digest"),
		ValidArgsFunction: completeImages(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			imgs, err := g.client().RemoveImage(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, imgs, func(w io.Writer) error {
				for _, i := range imgs {
					fmt.Fprintf(w, "image/%s removed\n", imageName(i))
				}
				return nil
			})
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "remove the image even if deployments use it")
	cmd.AddCommand(imp, ls, rm)
	return cmd
}

// tarDir streams dir as a tar of its regular files and directories, with
// paths relative to dir. The caller reads (and closes) the pipe.
func tarDir(dir string) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.AddFS(os.DirFS(dir))
		if err == nil {
			err = tw.Close()
		}
		if err != nil {
			err = fmt.Errorf("read %s: %w", dir, err)
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func completeImages(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		imgs, err := g.client().ListImages(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var refs []cobra.Completion
		for _, i := range imgs {
			if i.Name != "" {
				refs = append(refs, i.Name)
			} else {
				refs = append(refs, i.Digest)
			}
		}
		return refs, cobra.ShellCompDirectiveNoFileComp
	}
}

func printImages(w io.Writer, imgs []v1.ImageInfo) error {
	t := tw(w)
	fmt.Fprintln(t, "NAME\tDIGEST\tSIZE\tCREATED\tPLATFORM")
	for _, i := range imgs {
		created := "-"
		if !i.Created.IsZero() {
			created = fmtTime(&i.Created)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", imageName(i), shortDigest(i.Digest), humanSize(i.Size), created, i.Platform)
	}
	return t.Flush()
}

// imageName is the image's name:tag, or its digest when it is untagged.
func imageName(i v1.ImageInfo) string {
	if i.Name == "" {
		return i.Digest
	}
	return i.Name
}

// shortDigest is the first 12 hex digits of a sha256 digest.
func shortDigest(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// humanSize renders bytes in decimal units as docker does: 512B, 7.3kB, 12.5MB.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit-0.05 && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%s", v, []string{"kB", "MB", "GB", "TB", "PB", "EB"}[i])
}
