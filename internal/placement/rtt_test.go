package placement

import "testing"

func TestEstimateRTTms(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want float64
	}{
		{"us-east-1", "us-east-1", 0},
		{"us-east-1", "us-east-2", sameAreaRTTms},
		{"us-east-1", "us-west-2", 65},
		{"us-west-2", "us-east-1", 65},
		{"eu-west-1", "europe-west4", sameAreaRTTms},
		{"us-east-1", "eu-central-1", 80},
		{"westeurope", "eastus", 80},
		{"asia-northeast1", "ap-northeast-1", sameAreaRTTms},
		{"ap-southeast-2", "asia-southeast1", 110},
		{"SE", "eu-north-1", sameAreaRTTms},
		{"US", "us-east-1", sameAreaRTTms},
		{"mars-1", "us-east-1", DefaultRTTms},
	} {
		if got := EstimateRTTms(c.a, c.b); got != c.want {
			t.Errorf("EstimateRTTms(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestRTTTable(t *testing.T) {
	offs := []Offering{{Region: "us-east-1"}, {Region: "eu-west-1"}, {Region: "us-east-1"}}
	if RTTTable(nil, offs, nil) != nil {
		t.Error("a table without traffic")
	}
	measured := map[[2]string]float64{{"eu-west-1", "us-east-1"}: 71}
	got := RTTTable(map[string]float64{"us-east-1": 2}, offs, measured)
	want := map[[2]string]float64{{"us-east-1", "us-east-1"}: 0, {"us-east-1", "eu-west-1"}: 71}
	if len(got) != len(want) {
		t.Fatalf("table %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v = %v, want %v (table %v)", k, got[k], v, got)
		}
	}
}
