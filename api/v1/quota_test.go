package v1

import (
	"reflect"
	"testing"
)

func TestParseCloudsQuota(t *testing.T) {
	f, err := ParseClouds([]byte(`
clouds:
- name: aws
  provider: local
  region: us-east-1
  catalog: aws
  regions: [us-east-1, eu-west-1]
  quota: {replicas: 100, regions: {us-east-1: 20, eu-west-1: 0}}
- name: local-a
  provider: local
  region: local-east
  capacity: {cpu: 8, memory: 16Gi}
  quota: {regions: {local-east: 3}}
`))
	if err != nil {
		t.Fatal(err)
	}
	hundred := 100
	if got, want := f.Clouds[0].Quota, (&CloudQuota{Replicas: &hundred, Regions: map[string]int{"us-east-1": 20, "eu-west-1": 0}}); !reflect.DeepEqual(got, want) {
		t.Errorf("aws quota %+v, want %+v", got, want)
	}
	if got := f.Clouds[1].Quota; got == nil || got.Replicas != nil || got.Regions["local-east"] != 3 {
		t.Errorf("local-a quota %+v", got)
	}
}

func TestParseCloudsQuotaErrors(t *testing.T) {
	local := "clouds:\n- name: a\n  provider: local\n  region: r\n  capacity: {cpu: 1, memory: 1Gi}\n"
	catalog := "clouds:\n- name: a\n  provider: local\n  region: r\n  catalog: aws\n  regions: [us-east-1]\n"
	tests := []struct {
		name  string
		input string
		want  []wantErr
	}{
		{"negative replicas", local + "  quota: {replicas: -1}\n", []wantErr{{"clouds[0].quota.replicas", "must be a whole number of replicas >= 0 (got -1)"}}},
		{"negative region", catalog + "  quota: {regions: {us-east-1: -2}}\n", []wantErr{{"clouds[0].quota.regions.us-east-1", ">= 0 (got -2)"}}},
		{"not a number", local + "  quota: {replicas: lots}\n", []wantErr{{"clouds[0].quota.replicas", "expected"}}},
		{"unknown field", local + "  quota: {replica: 3}\n", []wantErr{{"clouds[0].quota.replica", `did you mean "replicas"?`}}},
		{"other region of a local cloud", local + "  quota: {regions: {r2: 1}}\n", []wantErr{{"clouds[0].quota.regions.r2", `runs only in its region "r"`}}},
		{"region outside the catalog's", catalog + "  quota: {regions: {eu-west-1: 1}}\n", []wantErr{{"clouds[0].quota.regions.eu-west-1", "not one of the cloud's regions"}}},
		{"second cloud", local + "- name: b\n  provider: local\n  region: r\n  capacity: {cpu: 1, memory: 1Gi}\n  quota: {replicas: -5}\n", []wantErr{{"clouds[1].quota.replicas", ">= 0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseClouds([]byte(tt.input))
			if f != nil {
				t.Error("ParseClouds returned a file with an error")
			}
			checkErrors(t, err, tt.want)
		})
	}
}
