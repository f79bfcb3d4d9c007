package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newCloudsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "clouds",
		Short: "List clouds with their state, capacity, usage and prices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			cl, err := g.client().Clouds(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(cmd.OutOrStdout(), g.output, cl, func(w io.Writer) error { return printClouds(w, cl) })
		},
	}
}

func completeClouds(g *globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := g.client().Clouds(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, c := range cl {
			names = append(names, c.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func newCloudCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cloud",
		Short: "Act on one cloud: cordon, uncordon, fail (drill), recover",
	}
	for _, a := range []struct{ verb, short, done string }{
		{"cordon", "Stop placing replicas on a cloud and move its replicas elsewhere", "cordoned"},
		{"uncordon", "Allow placing replicas on a cloud again", "uncordoned"},
		{"fail", "Failure drill: the cloud loses all its replicas at once and takes no new ones", "failed"},
		{"recover", "End a failure drill: the cloud takes replicas again", "recovered"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:               a.verb + " NAME",
			Short:             a.short,
			Args:              exactArgs(1, "a cloud name"),
			ValidArgsFunction: completeClouds(g),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := g.client().CloudAction(cmd.Context(), args[0], a.verb); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "cloud/%s %s\n", args[0], a.done)
				return nil
			},
		})
	}
	return cmd
}
