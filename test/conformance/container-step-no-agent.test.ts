// The container-action suite again with agent.enabled: false, so every hook process connects over
// SSH itself (the in-process path). FakeRunner reads RCH_TEST_AGENT when each runner is made, that
// is while the suite below loads. One suite per file: a file's top-level hooks span all it loads.
process.env.RCH_TEST_AGENT = 'off'
afterAll(() => {
  delete process.env.RCH_TEST_AGENT
})

require('./container-step.test')
