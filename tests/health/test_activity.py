"""Dead units (bias -10 before a ReLU) and the gradient death that follows."""

from torch import nn

from health_models import act_mlp, kinds, run, teacher_data


def test_bias_minus_ten_kills_the_relu_and_starves_the_layer_before():
    scope, _ = run(act_mlp(nn.ReLU, first_bias=-10.0), teacher_data(25))
    found = {(f.kind, f.site): f for f in scope.findings()}
    dead = found[("dead_units", "1:output")]
    assert dead.severity == "error"
    assert dead.evidence["dead_fraction"] == 1.0
    assert dead.step == 19  # the DeadUnits lens judges after its 20-step window
    starved = found[("gradient_death", "0:output.grad")]
    assert starved.evidence["dead_fraction"] == 1.0
    # the healthy second layer and the head are not named
    assert {site for _, site in found} == {"1:output", "0:output.grad"}
    # the starved layer is a consequence of the dead one: reported under it, once
    assert starved.cause == ("dead_units", "1:output")
    assert dead.consequences == ("0 gets no gradient",)
    records = [r for r in scope.records() if r.tag == "health"]
    assert [(r.statistic, r.site, r.value) for r in records] == [("dead_units", "1:output", 3.0)]
    assert records[0].text == dead.text
    assert ", so 0 gets no gradient; check its bias" in dead.text
    assert dead.open
    assert dead.last_step == 24


def test_the_threshold_is_an_option():
    from layerscope import default_lenses as default
    from layerscope.health import Health

    lenses = [
        *default()[:-1],
        Health(dead_units={"fraction": 1.01}, gradient_death={"fraction": 1.01}),
    ]
    scope, _ = run(act_mlp(nn.ReLU, first_bias=-10.0), teacher_data(25), lenses=lenses)
    assert kinds(scope) == []
