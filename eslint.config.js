import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['node_modules/**', 'dist/**', 'dist-bench/**', 'test-output/**', 'data/**', '.tap/**', 'bench/results/**']
})
